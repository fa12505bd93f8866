"""Training: datasets, features, candidates, evaluation, bundle writing, publishing.

Importing the package sets ``OMP_WAIT_POLICY=PASSIVE`` unless already set: XGBoost's OpenMP
threads otherwise spin while waiting, which makes training up to 10x slower on a busy or
CPU-limited machine (a Kubernetes Job with a CPU limit, a shared CI runner). It only takes
effect if it happens before the OpenMP runtime is loaded (before xgboost is imported).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
