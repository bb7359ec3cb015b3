"""WALS as Spark MLlib implicit ALS, and warm-user metrics scored in Spark tasks."""
