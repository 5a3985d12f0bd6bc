"""Adapters: the AWS implementations of tqcore's ports."""
