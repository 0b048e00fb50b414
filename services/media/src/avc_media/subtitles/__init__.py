"""Subtitle tracks of a video: upload (WebVTT/SRT), list, delete, HLS master playlist entries."""
