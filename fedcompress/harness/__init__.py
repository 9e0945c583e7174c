"""The experiment harness: config, round loop, checkpoints, reporters, flags, sweeps, plots."""
