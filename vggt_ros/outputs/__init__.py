"""The output plan shared by the node and the replay (ROS-free).

``plan`` is the table of outputs (topic, type, enabling parameter, QoS, rate); ``pose_frames`` the
REP 105 policy deciding which TF edge and odometry frames carry a pose; ``builder`` turns window
outputs, the map and diagnostics into messages through a message factory (rclpy classes for the
node, a rosbags typestore for the replay's MCAP), so both publish exactly the same.
"""
