"""Example tq task types: ``TQ_HANDLER_MODULES=thumbnails.handlers`` registers them."""
