"""The process layout: a master supervising uvloop workers (design.md section 4)."""
