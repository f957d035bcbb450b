"""Embedding representations: every one maps sparse [B, T] ids to feature vectors [B, F, D]."""
