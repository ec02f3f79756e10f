// placeholder (issue 8 demo)
