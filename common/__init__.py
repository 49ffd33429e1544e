"""Thin layer shared by the paper packages: data, metrics, weights, devices, shared model pieces."""
