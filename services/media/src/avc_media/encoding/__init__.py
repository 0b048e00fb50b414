"""Encoding of untrusted uploads: ffmpeg selection and sandboxing, probing, the HLS ladder."""
