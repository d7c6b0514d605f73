"""Every parameter of vggt_ros, described once (ROS-free).

Why a package of its own: the rclpy node, the bag replay, the benchmarks and the streaming core all
read the same table (:mod:`vggt_ros.params.table`), so a name, default, bound or doc string exists in
exactly one place. :mod:`~vggt_ros.params.spec` describes one parameter and coerces one value,
:mod:`~vggt_ros.params.validation` checks a whole parameter set, :mod:`~vggt_ros.params.yaml_file`
reads ROS parameter files and generates ``config/vggt.yaml``. Import the submodules directly.
"""
