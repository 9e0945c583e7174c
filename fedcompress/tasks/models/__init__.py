"""Models of the tasks, and the Keras helpers they need."""
