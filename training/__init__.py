"""Offline training pipeline for improvd (may import tensorflow; improvd/ never imports this)."""
