"""Shared pieces of the tempered_mpc launch files (not a launch file itself)."""
import os
import tempfile

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

HERE = os.path.dirname(os.path.abspath(__file__))
CONTROLLER = 'tempered_mpc_controller'
SIMULATOR = 'tempered_mpc_simulator'


def config(name):
    """A parameter file shipped in launch/config (the files `tempered-mpc run --params` reads)."""
    return os.path.join(HERE, 'config', name)


def node_parameters(node_name, values):
    """A parameter file for one node, keyed by its bare name.

    rclnodejs 2.2 takes overrides only under the bare node name (or /**), so
    the dict parameters of launch_ros, which it keys by the fully qualified
    name (/namespace/node), would be ignored.
    """
    with tempfile.NamedTemporaryFile('w', prefix=f'{node_name}_', suffix='.yaml', delete=False) as f:
        yaml.safe_dump({node_name: {'ros__parameters': values}}, f)
        return f.name


def controller_with_autostart(params_file, namespace, use_sim_time, autostart, remappings=()):
    """The managed controller node, configured and then activated when autostart is true."""
    controller = LifecycleNode(
        package='tempered_mpc', executable='controller', name=CONTROLLER, namespace=namespace,
        parameters=[params_file, node_parameters(CONTROLLER, {'use_sim_time': use_sim_time})], remappings=list(remappings), output='screen')
    configure = EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(controller), transition_id=Transition.TRANSITION_CONFIGURE),
        condition=IfCondition(autostart))
    activate = RegisterEventHandler(OnStateTransition(
        # only after the first configure: a later deactivate must stay inactive
        target_lifecycle_node=controller, start_state='configuring', goal_state='inactive',
        entities=[EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(controller), transition_id=Transition.TRANSITION_ACTIVATE))]),
        condition=IfCondition(autostart))
    return [controller, activate, configure]


def controller_rate_hz(params_file):
    """The controller's rateHz from a parameter file (the simulator steps at it in lockstep)."""
    with open(params_file, encoding='utf-8') as f:
        doc = yaml.safe_load(f) or {}
    params = (doc.get(CONTROLLER) or doc.get('/' + CONTROLLER) or {}).get('ros__parameters', {})
    rate = float(params.get('rateHz', 0.0))
    if rate <= 0.0:
        raise RuntimeError(f"{params_file}: lockstep needs the controller's rateHz in the file (0 means 1/dt of the model)")
    return rate


def sim_launch_description(system, params_name):
    """Controller and simulator for one system: real time by default, lockstep:=true for simulated time."""
    args = [
        DeclareLaunchArgument('params_file', default_value=config(params_name), description='ROS 2 parameter file of both nodes'),
        DeclareLaunchArgument('namespace', default_value='tempered_mpc', description='namespace of both nodes and their topics'),
        DeclareLaunchArgument('lockstep', default_value='false',
                              description='true: the simulator publishes /clock and waits for every command (deterministic on any machine)'),
        DeclareLaunchArgument('autostart', default_value='true', description='configure and activate the controller at launch'),
    ]

    def nodes(context):
        params_file = LaunchConfiguration('params_file').perform(context)
        namespace = LaunchConfiguration('namespace').perform(context)
        lockstep = LaunchConfiguration('lockstep').perform(context).lower() in ('true', '1', 'yes')
        sim_params = {'system': system, 'stepping': 'lockstep' if lockstep else 'realtime'}
        if lockstep:
            sim_params['stateRateHz'] = controller_rate_hz(params_file)
        simulator = Node(package='tempered_mpc', executable='simulator', name=SIMULATOR, namespace=namespace,
                         parameters=[params_file, node_parameters(SIMULATOR, sim_params)], output='screen')
        return [simulator, *controller_with_autostart(params_file, namespace, lockstep, LaunchConfiguration('autostart'))]

    return LaunchDescription([*args, OpaqueFunction(function=nodes)])
