# lme4 fit times for the benchmark: Rscript lme4_timing.R SPEC.json
#
# SPEC.json (written by lme4_timing.py):
#   {"time_limit": seconds per fit, "repeats": timed fits of fast models,
#    "slow": s, "fast": s, "fast_budget": s, "max_fast_runs": k,   # the timing rule
#    "cases": [{"name", "formula", "reml",
#               "dataset", "package"                     # an R package's data set, or
#               "csv", "factors": {column: levels or null}}, ...]}  # our data as CSV
#
# Writes one JSON object per line to stdout: first {"info": {R, lme4, Matrix, BLAS,
# LAPACK}}, then per case {name, seconds, runs, feval, objective, derivs, warnings},
# {name, timeout} or {name, error}.
#
# Timing rule, as for our fits (workers.py): a warm-up fit, then the median of `repeats`
# fits (3 when the warm-up took 1 s or more; about `fast_budget` seconds of fits, at most
# `max_fast_runs`, when it took under `fast`); a first fit of `slow` seconds or more is
# the only one.

suppressPackageStartupMessages(library(lme4))
options(contrasts = c("contr.treatment", "contr.treatment"))  # as Python users get

args <- commandArgs(trailingOnly = TRUE)
spec <- jsonlite::fromJSON(args[1], simplifyDataFrame = FALSE)

emit <- function(x) {
  cat(jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA, null = "null"), "\n", sep = "")
  flush(stdout())
}

fit_once <- function(f, d, reml) {
  msgs <- character()
  setTimeLimit(elapsed = spec$time_limit, transient = TRUE)
  on.exit(setTimeLimit(elapsed = Inf))
  invisible(gc())  # as system.time does
  began <- Sys.time()  # microseconds; system.time rounds to milliseconds
  m <- withCallingHandlers(lmer(f, d, REML = reml), warning = function(w) {
    msgs <<- c(msgs, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
  t <- as.numeric(difftime(Sys.time(), began, units = "secs"))
  list(seconds = t, model = m, warnings = msgs)
}

timed_fits <- function(first) {
  if (first >= spec$slow) return(0)
  if (first < spec$fast) {
    return(max(spec$repeats, min(spec$max_fast_runs, floor(spec$fast_budget / max(first, 1e-4)))))
  }
  if (first < 1) spec$repeats else min(3, spec$repeats)
}

load_data <- function(case) {
  if (is.null(case$csv)) {
    data(list = case$dataset, package = case$package, envir = environment())
    return(get(case$dataset))
  }
  d <- as.data.frame(data.table::fread(case$csv))
  for (v in names(case$factors)) {
    levels <- case$factors[[v]]
    d[[v]] <- if (is.null(levels)) factor(d[[v]]) else factor(d[[v]], levels = levels)
  }
  d
}

time_case <- function(case) {
  d <- load_data(case)
  f <- as.formula(case$formula)
  first <- fit_once(f, d, case$reml)
  k <- timed_fits(first$seconds)
  runs <- if (k > 0) lapply(seq_len(k), function(i) fit_once(f, d, case$reml)) else list(first)
  m <- runs[[length(runs)]]$model
  list(name = case$name, seconds = median(sapply(runs, `[[`, "seconds")), runs = length(runs),
       feval = m@optinfo$feval, objective = if (case$reml) REMLcrit(m) else deviance(m),
       derivs = !is.null(m@optinfo$derivs), warnings = I(first$warnings))
}

emit(list(info = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                      Matrix = as.character(packageVersion("Matrix")),
                      BLAS = extSoftVersion()[["BLAS"]], LAPACK = La_library())))
data("Dyestuff", package = "lme4")
invisible(lmer(Yield ~ 1 + (1 | Batch), Dyestuff))  # warm-up

for (case in spec$cases) {
  emit(tryCatch(time_case(case), error = function(e) {
    msg <- conditionMessage(e)
    if (grepl("time limit", msg)) list(name = case$name, timeout = spec$time_limit)
    else list(name = case$name, error = msg)
  }))
}
