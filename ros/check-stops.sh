#!/usr/bin/env bash
# The safe command on every way out, on a real ROS 2 (docs/results.md, "The ROS door on a real
# Jazzy"). Needs a sourced ROS 2 with rclpy and this package built and sourced. For each way of
# stopping, it launches the pendulum against the simulator, lets it control for 14 s while a
# reliable rclpy subscriber records every message on the command topic, stops it, and prints the
# last command, how long the launch took to end, its exit code, and any error line.
#
#   ros/check-stops.sh [WAY ...]     WAY: shutdown | ctrl-c | sigterm, each optionally
#                                    +lockstep and/or +telemetry (default: all twelve)
set -uo pipefail
for way in "$@"; do
  [[ $way =~ ^(shutdown|ctrl-c|sigterm)(\+lockstep)?(\+telemetry)?$ ]] || { echo "check-stops: unknown way '$way' (shutdown, ctrl-c or sigterm, then optionally +lockstep, +telemetry)" >&2; exit 2; }
done
command -v ros2 > /dev/null || { echo "check-stops: source a ROS 2 installation and this package first" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
NODE=/tempered_mpc/tempered_mpc_controller

cat > "$work/record.py" <<'EOF'
import sys, time, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray
rclpy.init()
node = rclpy.create_node('check_stops_recorder')
out = open(sys.argv[1], 'w', buffering=1)
node.create_subscription(Float64MultiArray, '/tempered_mpc/command',
                         lambda m: out.write(f"{time.time():.3f} {list(m.data)}\n"), QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
try:
    rclpy.spin(node)
except BaseException:
    pass
EOF

# a parameter file with the telemetry server on: the shipped pendulum file plus telemetryPort
config=$(ros2 pkg prefix tempered_mpc)/share/tempered_mpc/launch/config/pendulum.yaml
sed 's/^    staleTimeoutS: 0.5$/    staleTimeoutS: 0.5\n    telemetryPort: 18765/' "$config" > "$work/telemetry.yaml"

check() {
  local way=$1 how=${1%%+*} args=(pendulum_sim.launch.py)
  [[ $way == *+lockstep* ]] && args+=(lockstep:=true)
  [[ $way == *+telemetry* ]] && args+=(params_file:="$work/telemetry.yaml")
  local log="$work/$way.log" commands="$work/$way.commands"
  python3 "$work/record.py" "$commands" > /dev/null 2>&1 &
  local recorder=$!
  # job control on: the launch gets its own process group, as in a terminal, and does not inherit SIGINT as ignored
  set -m
  ( ros2 launch tempered_mpc "${args[@]}" > "$log" 2>&1; echo $? > "$log.rc" ) &
  local group=$!
  set +m
  sleep 14
  local t0; t0=$(date +%s.%N)
  case $how in
    shutdown) ros2 lifecycle set $NODE shutdown > /dev/null ;;
    ctrl-c) kill -INT -- -"$group" ;;  # what a terminal's Ctrl-C does: SIGINT to the whole group
    sigterm) pkill -TERM -f 'main.js controller' ;;
  esac
  local ended=""
  if [[ $how == ctrl-c ]]; then
    while [[ ! -f $log.rc ]]; do sleep 0.05; done
    ended=$(printf '%.2f' "$(echo "$(date +%s.%N) - $t0" | bc)")
  else
    sleep 2
    kill -INT -- -"$group"
    while [[ ! -f $log.rc ]]; do sleep 0.05; done
  fi
  # the recorder writes line by line: nothing is lost when it is killed (rclpy does not always end on a signal)
  kill -KILL $recorder; wait $recorder 2> /dev/null
  local last; last=$(tail -1 "$commands" | cut -d' ' -f2-)
  local errors; errors=$(grep -cE 'ERROR|rror|died|escalat' "$log")
  printf '%-28s commands %4d  last %-8s launch exit %s%s  error lines %s\n' "$way" "$(wc -l < "$commands")" "$last" \
    "$(cat "$log.rc")" "${ended:+ after $ended s}" "$errors"
  [[ $errors == 0 ]] || grep -E 'ERROR|rror|died|escalat' "$log" | sed 's/^/    /'
}

ways=("$@")
[[ ${#ways[@]} -gt 0 ]] || ways=(shutdown shutdown+lockstep shutdown+telemetry shutdown+lockstep+telemetry
  ctrl-c ctrl-c+lockstep ctrl-c+telemetry ctrl-c+lockstep+telemetry sigterm sigterm+lockstep sigterm+telemetry sigterm+lockstep+telemetry)
for way in "${ways[@]}"; do check "$way"; done
