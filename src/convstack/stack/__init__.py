"""Focus stacking: fuse photos focused at different depths into one sharp image."""
