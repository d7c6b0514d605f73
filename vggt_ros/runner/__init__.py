"""The streaming loop shared by the node, the bag replay and the node-stream benchmark (ROS-free).

``stream_runner.StreamRunner`` owns the worker and output threads, back-pressure, out-of-memory
trimming, the warm-up and reset epochs; ``depth_pairing`` pairs colour and depth images;
``health`` keeps the stream's recent events (a sliding window) and the diagnostics level they earn;
``diagnostics`` builds the one diagnostics report both the node and the replay publish.
"""
