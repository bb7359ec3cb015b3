"""Other engines that train or score through the same experiment core (Spark)."""
