"""Stage family `evaluate`, `summarize_cams`, `report`: the final scores, the CAM methods'
summary and the HTML report."""
