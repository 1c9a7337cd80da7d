"""Evaluation of plugins and routing on small labelled datasets."""
