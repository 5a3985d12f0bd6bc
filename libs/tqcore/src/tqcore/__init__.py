"""tq's shared core: the task domain, its ports, and the AWS adapters behind them."""
