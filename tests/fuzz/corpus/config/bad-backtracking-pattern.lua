return { experiment = (string.rep("a", 3000)):find(".-.-.-b") and "x" or "y" }
