"""TFF wiring: encoded broadcast and mean, robust aggregation, FedAvg, the owned runtime."""
