"""The offline tools: ``improvd continue`` and ``improvd demo``, notation files in and out, audio and piano rolls.

They drive ``improvd.core`` in simulated time (``simulate``), so a file gives the answer a live call would.
"""
