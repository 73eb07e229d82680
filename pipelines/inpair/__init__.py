"""In-pair curation: references and captions taken from the target clip itself."""
