"""Files: uploads, downloads, images and what is left over."""
