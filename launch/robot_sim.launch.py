"""Your own robot (a model module or a URDF) under the tempered_mpc controller, against the bundled simulator.

  ros2 launch tempered_mpc robot_sim.launch.py system:=$PWD/cartpole.mjs params_file:=$PWD/cartpole.yaml [lockstep:=true] [namespace:=NS] [autostart:=false]

`system` is passed to both nodes (an absolute path: launch starts the nodes
in their own working directory); the parameter file holds the rest, as for
the built-in systems (docs/your-robot.md).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tempered_mpc import sim_launch_description  # noqa: E402


def generate_launch_description():
    return sim_launch_description(None, None)
