"""The pure core: the melody encoding, the model and its numpy runtime, and the engine that answers a call.

Timestamped messages in, timestamped messages out. Nothing here owns a clock, a thread, a port or a socket, and
nothing here imports ``improvd.daemon`` or ``improvd.offline`` (``tests/test_layers.py`` holds it to that).
"""
