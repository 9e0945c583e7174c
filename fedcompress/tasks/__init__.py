"""Federated tasks: data loaders and models."""
