"""WALS as Spark MLlib implicit ALS and top-k scored in Spark tasks, through the one experiment runner.

- :mod:`.mapping`: our WALS parameters in Spark's terms (alpha = 1/w0 - 1, regParam, the lambda relation).
- :mod:`.session`: pyspark and Java checks, the SparkSession mfvsdnn starts.
- :mod:`.reader`: DATA read by the local loader or by Spark into the same Dataset and split.
- :mod:`.train`: :func:`fit_on_spark`, the runner's ``fit`` that trains WALS on Spark.
- :mod:`.evaluate`: :class:`SparkTopK`, the evaluator's top-k backend running in Spark tasks.

No module here imports pyspark at import time.
"""

from .evaluate import SparkTopK
from .mapping import als_params, effective_reg, lambda_relation, spark_alpha, spark_reg_param
from .reader import choose_reader, is_uri, read_dataset_spark, read_split, restore_uri
from .session import SparkError, parse_conf, require_pyspark, session_or, spark_session
from .train import SparkFit, check_models, fit_als, fit_on_spark

__all__ = ["SparkError", "SparkFit", "SparkTopK", "als_params", "check_models", "choose_reader", "effective_reg",
           "fit_als", "fit_on_spark", "is_uri", "lambda_relation", "parse_conf", "read_dataset_spark",
           "read_split", "require_pyspark", "restore_uri", "session_or", "spark_alpha", "spark_reg_param",
           "spark_session"]
