"""What `conftest.py` sets up for the whole suite, checked in a test process."""

import threadpoolctl


def test_numpy_runs_the_kernels_of_the_cpus_instruction_sets(openblas_kernels_wanted):
  import numpy  # noqa: F401  (loads OpenBLAS, if nothing has yet)

  # scikit-learn (the digits dataset) requires threadpoolctl, which reads OpenBLAS's choice.
  chosen = {pool["architecture"] for pool in threadpoolctl.threadpool_info()
            if pool["internal_api"] == "openblas"}
  assert chosen, "numpy's OpenBLAS was not found"
  # On a CPU without AVX2 OpenBLAS is left to choose; otherwise not its SSE3 fallback.
  assert openblas_kernels_wanted is None or chosen == {openblas_kernels_wanted}, (
      openblas_kernels_wanted, chosen)
