"""Resumable variants of provider operators (each module needs its provider installed)."""
