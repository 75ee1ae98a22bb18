"""Which node a parameter file's key names: ros/src/overrides.ts's rule, for the launch side (pure Python, no ROS).

test/launch-keys.test.ts checks that both give the same answers.
"""
import re


def key_matches(key, namespace, name):
    """Whether a parameter file's node key applies to /namespace/name.

    rclcpp's matching (a leading / added, /* one name, /** any number), and a
    bare name in any namespace, as the nodes take it.
    """
    if '/' not in key and '*' not in key:
        return key == name
    fqn = (namespace.rstrip('/') + '/' + name) if namespace.startswith('/') else '/' + (namespace + '/' if namespace else '') + name
    pattern = ('' if key.startswith('/') else '/') + key
    return re.fullmatch(pattern.replace('/*', '(/\\w+)'), fqn) is not None
