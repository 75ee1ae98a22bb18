"""The tempered_mpc controller alone, for hardware (or any simulator that speaks its topics).

  ros2 launch tempered_mpc controller.launch.py params_file:=my_robot.yaml \
      namespace:=arm state_topic:=/joint_states command_topic:=/forward_effort_controller/commands

Topics are relative to the namespace: state in (sensor_msgs/JointState, or
geometry_msgs/PoseStamped for a planar body), goal in (the same type), command
out (std_msgs/Float64MultiArray, what a ros2_control forward command controller
takes), plan and status out (tempered_mpc_msgs).
"""
import os
import sys

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tempered_mpc import config, controller_with_autostart  # noqa: E402


def generate_launch_description():
    args = [
        DeclareLaunchArgument('params_file', default_value=config('pendulum.yaml'), description='ROS 2 parameter file of the controller'),
        DeclareLaunchArgument('namespace', default_value='', description='namespace of the node and its topics'),
        DeclareLaunchArgument('state_topic', default_value='state', description='where the measured state comes from'),
        DeclareLaunchArgument('goal_topic', default_value='goal', description='where goals come from'),
        DeclareLaunchArgument('command_topic', default_value='command', description='where commands go'),
        DeclareLaunchArgument('use_sim_time', default_value='false', description='follow /clock (a simulator) instead of the wall clock'),
        DeclareLaunchArgument('autostart', default_value='true', description='configure and activate at launch'),
    ]

    def nodes(context):
        get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
        remaps = [('state', get('state_topic')), ('goal', get('goal_topic')), ('command', get('command_topic'))]
        use_sim_time = get('use_sim_time').lower() in ('true', '1', 'yes')
        return controller_with_autostart(get('params_file'), get('namespace'), use_sim_time, LaunchConfiguration('autostart'), remaps)

    return LaunchDescription([*args, OpaqueFunction(function=nodes)])
