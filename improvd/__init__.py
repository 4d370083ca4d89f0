"""improvd: a real-time AI improvisation partner for MIDI keyboards."""

__version__ = "0.1.0"
