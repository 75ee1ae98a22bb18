"""Shared pieces of the tempered_mpc launch files (not a launch file itself)."""
import os

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import Parameter
from lifecycle_msgs.msg import Transition

from _node_keys import key_matches

HERE = os.path.dirname(os.path.abspath(__file__))
CONTROLLER = 'tempered_mpc_controller'
SIMULATOR = 'tempered_mpc_simulator'


def config(name):
    """A parameter file shipped in launch/config (the files `tempered-mpc run --params` reads)."""
    return os.path.join(HERE, 'config', name)


def rules(values):
    """Parameters as `-p name:=value` rules after the parameter file (so they win), not as a temporary file."""
    return [Parameter(name, value) for name, value in values.items()]


def controller_with_autostart(params_file, namespace, use_sim_time, autostart, remappings=(), extra=None):
    """The managed controller node, configured and then activated when autostart is true."""
    controller = LifecycleNode(
        package='tempered_mpc', executable='controller', name=CONTROLLER, namespace=namespace,
        parameters=[params_file, *rules({'use_sim_time': use_sim_time, **(extra or {})})], remappings=list(remappings), output='screen')
    configure = EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(controller), transition_id=Transition.TRANSITION_CONFIGURE),
        condition=IfCondition(autostart))
    activate = RegisterEventHandler(OnStateTransition(
        # only after the first configure (handle_once): a controller taken down and configured again stays inactive
        target_lifecycle_node=controller, start_state='configuring', goal_state='inactive',
        entities=[EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(controller), transition_id=Transition.TRANSITION_ACTIVATE))],
        handle_once=True),
        condition=IfCondition(autostart))
    return [controller, activate, configure]


def controller_rate_hz(params_file, namespace):
    """The controller's rateHz from a parameter file (the simulator steps at it in lockstep), the last matching key's."""
    with open(params_file, encoding='utf-8') as f:
        doc = yaml.safe_load(f) or {}
    rate = 0.0
    for key, body in doc.items():
        params = (body or {}).get('ros__parameters', {}) if key_matches(str(key), namespace, CONTROLLER) else {}
        rate = float(params.get('rateHz', rate))
    if rate <= 0.0:
        raise RuntimeError(f"{params_file}: lockstep needs the controller's rateHz in the file (0 means 1/dt of the model)")
    return rate


def sim_launch_description(system, params_name):
    """Controller and simulator for one system: real time by default, lockstep:=true for simulated time.

    system None: the `system` launch argument names it (a model file of the user's, for both nodes)."""
    args = [
        *([DeclareLaunchArgument('system', description='the model both nodes run: a built-in name, or a model file (.mjs, .js, .urdf; an absolute path)')] if system is None else []),
        DeclareLaunchArgument('params_file', **({'default_value': config(params_name)} if params_name else {}), description='ROS 2 parameter file of both nodes'),
        DeclareLaunchArgument('namespace', default_value='tempered_mpc', description='namespace of both nodes and their topics'),
        DeclareLaunchArgument('lockstep', default_value='false',
                              description='true: the simulator publishes /clock and waits for every command (deterministic on any machine)'),
        DeclareLaunchArgument('autostart', default_value='true', description='configure and activate the controller at launch'),
    ]

    def nodes(context):
        params_file = LaunchConfiguration('params_file').perform(context)
        namespace = LaunchConfiguration('namespace').perform(context)
        lockstep = LaunchConfiguration('lockstep').perform(context).lower() in ('true', '1', 'yes')
        chosen = system if system is not None else LaunchConfiguration('system').perform(context)
        sim_params = {'system': chosen, 'stepping': 'lockstep' if lockstep else 'realtime'}
        if lockstep:
            sim_params['stateRateHz'] = controller_rate_hz(params_file, namespace)
        simulator = Node(package='tempered_mpc', executable='simulator', name=SIMULATOR, namespace=namespace,
                         parameters=[params_file, *rules(sim_params)], output='screen')
        extra = {'system': chosen} if system is None else None
        return [simulator, *controller_with_autostart(params_file, namespace, lockstep, LaunchConfiguration('autostart'), extra=extra)]

    return LaunchDescription([*args, OpaqueFunction(function=nodes)])
