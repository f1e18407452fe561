"""Model monitoring: reference statistics of training data and drift scores of live traffic."""
