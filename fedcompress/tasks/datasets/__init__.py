"""Federated datasets: loaders and preprocessing, apart from the models."""
