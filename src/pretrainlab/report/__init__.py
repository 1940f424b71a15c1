"""The report of a run: its data prepared as a view, rendered through a Jinja template to one HTML file."""
