#!/usr/bin/env python3
"""The controller's solve times as a distribution, read from its status on a running ROS 2 graph.

  python3 ros/check-solve.py [SECONDS] [STATUS_TOPIC]     (defaults: 40, /tempered_mpc/status)

Needs a sourced ROS 2 and this package (its tempered_mpc_msgs). Counts the ticks that planned
(mode ok), leaves out the first 10 (the swing-up's start), and prints p50/p90/p99/max of
solve_ms against the budget, with the deadline misses the controller counted
(docs/results.md, "The ROS door on a real Jazzy").
"""
import sys
import time


def refuse(reason):
    print(f'check-solve: {reason}', file=sys.stderr)
    sys.exit(2)


try:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 40.0
except ValueError:
    refuse(f"SECONDS must be a number, got '{sys.argv[1]}'")
if not 1 <= seconds <= 3600:
    refuse(f'SECONDS must be within 1..3600, got {sys.argv[1]}')
topic = sys.argv[2] if len(sys.argv) > 2 else '/tempered_mpc/status'
try:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from tempered_mpc_msgs.msg import PlannerStatus
except ImportError as e:
    sys.exit(f'check-solve: source a ROS 2 installation and this package first ({e})')
rclpy.init()
node = rclpy.create_node('check_solve')
planned = []
last = []


def on_status(msg):
    last[:] = [msg]
    if msg.mode_name == 'ok':
        planned.append(msg.solve_ms)


node.create_subscription(PlannerStatus, topic, on_status, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
end = time.time() + seconds
while time.time() < end:
    rclpy.spin_once(node, timeout_sec=0.1)
solves = sorted(planned[10:])
if not solves or not last:
    sys.exit(f'check-solve: fewer than 11 planned ticks on {topic} in {seconds:g} s')


def q(p):
    return solves[min(len(solves) - 1, int(p * len(solves)))]


s = last[0]
print(f'{len(solves)} planned ticks (first 10 left out): solve p50 {q(0.5):.1f} ms, p90 {q(0.9):.1f}, '
      f'p99 {q(0.99):.1f}, max {solves[-1]:.1f} (budget {s.budget_ms:g} ms); '
      f'deadline misses {s.deadline_misses} of {s.ticks} ticks')
