"""Results into what a person sees: terminal text (rich) and PNG heatmaps."""
