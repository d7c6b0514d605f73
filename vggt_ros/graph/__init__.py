"""Keyframe pose graph pieces: place recognition (global descriptors, candidate index) for loop closure."""
