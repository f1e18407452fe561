"""Text models in the training service: labelled text tables in, fine-tuned Hugging Face classifiers out."""
