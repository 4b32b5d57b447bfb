"""YOLOv3-family models built from darknet cfg files."""
from models.darknet import Darknet, count_parameters, model_summary

__all__ = ["Darknet", "count_parameters", "model_summary"]
