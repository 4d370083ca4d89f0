"""The daemon around the core: MIDI ports, the timing thread, MQTT control, configuration and the service's life.

It drives ``improvd.core`` in real time; it never imports ``improvd.offline``, music21 or matplotlib.
"""
