"""``sketchbench demo``: a local web page to draw a sketch and see what a trained model retrieves
(:mod:`sketchbench.demo.server`; the page is ``static/index.html``)."""
