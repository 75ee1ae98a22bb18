"""The double pendulum on a cart under the tempered_mpc controller, against the bundled simulator.

  ros2 launch tempered_mpc cart_double_pendulum_sim.launch.py [lockstep:=true] [params_file:=FILE] [namespace:=NS] [autostart:=false]

The controller comes up as a managed node and is configured and activated
automatically (autostart:=false leaves that to `ros2 lifecycle set`).
Parameters: launch/config/cart-double-pendulum.yaml, the same file `tempered-mpc run --params` reads.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _tempered_mpc import sim_launch_description  # noqa: E402


def generate_launch_description():
    return sim_launch_description('cart-double-pendulum', 'cart-double-pendulum.yaml')
