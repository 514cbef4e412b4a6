#!/usr/bin/env node
// A committed entry point, so that installing the workspace before a build links the bin
// without a warning; the program itself is the compiled dist/bin.js.
import '../dist/bin.js'
