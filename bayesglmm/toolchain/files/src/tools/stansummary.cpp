// stansummary -- summary statistics of Stan sampler CSV files.
//
// Part of the bayesglmm toolchain: a CmdStan-compatible `bin/stansummary`
// (see docs: cmdstan-contract.md, section A.3), written for this project.
//
// Usage:
//   stansummary [options] <chain1.csv> [<chain2.csv> ...]
//
// Options (the value may follow '=' in the same token -- possibly after spaces,
// as in cmdstanpy's "--percentiles= 5,50,95" -- or come as the next token):
//   --percentiles=<p1,p2,...>   increasing percentiles in (0,100); default 5,50,95
//   --sig_figs=<n>              significant figures, 1..18; default 2 on the
//                               console, 6 in the CSV file
//   --csv_filename=<path>       also write the summary as CSV (alias --csv_file)
//   --help                      print this text
//
// Per CSV column (sampler columns such as lp__ included) it reports the mean,
// Monte Carlo standard error (StdDev / sqrt(N_Eff)), standard deviation, the
// requested percentiles (linear interpolation between order statistics, i.e.
// numpy's default), the split-chain effective sample size, N_Eff per second of
// sampling time, and split R-hat.  Warmup draws saved in the files are skipped.
// Statistics use the Stan library's analysis routines (stan/analyze/mcmc).

#include <stan/analyze/mcmc/compute_effective_sample_size.hpp>
#include <stan/analyze/mcmc/compute_potential_scale_reduction.hpp>
#include "stan_csv.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace bgtools;

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

const double NaN = std::numeric_limits<double>::quiet_NaN();

struct column_summary {
  double mean = NaN, mcse = NaN, sd = NaN, ess = NaN, ess_per_sec = NaN,
         rhat = NaN;
  std::vector<double> quantiles;
};

// Quantile by linear interpolation between order statistics (Hyndman & Fan
// type 7; numpy's default).  `sorted` must be sorted and free of NaN.
double quantile_sorted(const std::vector<double>& sorted, double p) {
  size_t n = sorted.size();
  if (n == 0) return NaN;
  double h = (n - 1) * p;
  size_t lo = static_cast<size_t>(std::floor(h));
  if (lo >= n - 1) return sorted[n - 1];
  double frac = h - lo;
  double a = sorted[lo], b = sorted[lo + 1];
  if (frac == 0 || a == b) return a;
  return a + frac * (b - a);
}

column_summary summarize(const std::vector<std::vector<double>>& chains,
                         const std::vector<double>& probs,
                         double sampling_seconds) {
  column_summary s;
  std::vector<double> pooled;
  for (const auto& c : chains) pooled.insert(pooled.end(), c.begin(), c.end());
  size_t n = pooled.size();
  s.quantiles.assign(probs.size(), NaN);
  if (n == 0) return s;

  long double sum = 0;
  for (double x : pooled) sum += x;
  double mean = static_cast<double>(sum / n);
  s.mean = mean;
  if (n > 1) {
    long double ss = 0;
    for (double x : pooled) ss += (x - mean) * static_cast<long double>(x - mean);
    s.sd = std::sqrt(static_cast<double>(ss / (n - 1)));
  }

  bool has_nan = std::any_of(pooled.begin(), pooled.end(),
                             [](double x) { return std::isnan(x); });
  if (!has_nan) {
    std::sort(pooled.begin(), pooled.end());
    for (size_t i = 0; i < probs.size(); ++i)
      s.quantiles[i] = quantile_sorted(pooled, probs[i]);
  }

  size_t min_len = chains[0].size();
  for (const auto& c : chains) min_len = std::min(min_len, c.size());
  std::vector<const double*> ptrs;
  std::vector<size_t> sizes;
  for (const auto& c : chains) {
    ptrs.push_back(c.data());
    sizes.push_back(c.size());
  }
  if (min_len >= 4) {
    s.ess = stan::analyze::compute_split_effective_sample_size(ptrs, sizes);
    s.rhat = stan::analyze::compute_split_potential_scale_reduction(ptrs, sizes);
  } else if (min_len >= 2) {
    s.rhat = stan::analyze::compute_split_potential_scale_reduction(ptrs, sizes);
  }
  s.mcse = s.sd / std::sqrt(s.ess);
  if (sampling_seconds > 0) s.ess_per_sec = s.ess / sampling_seconds;
  return s;
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

std::string fmt(double v, int sig_figs) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream out;
  out << std::setprecision(sig_figs) << v;
  return out.str();
}

std::string pct_label(double pct) {
  std::ostringstream out;
  out << std::setprecision(6) << pct << "%";
  return out.str();
}

void usage(std::ostream& out) {
  out << "Usage: stansummary [options] <chain1.csv> [<chain2.csv> ...]\n"
         "Summarises the draws of one or more Stan sampler CSV files.\n"
         "Options:\n"
         "  --percentiles=<p1,p2,...>  increasing percentiles in (0,100) "
         "(default 5,50,95)\n"
         "  --sig_figs=<n>             significant figures, 1..18 (default 2 on "
         "the console, 6 in the CSV file)\n"
         "  --csv_filename=<path>      write the summary to a CSV file too\n"
         "  --help                     show this message\n";
}

struct options {
  std::vector<double> percentiles{5, 50, 95};
  int sig_figs = -1;
  std::string csv_filename;
  std::vector<std::string> files;
  bool help = false;
};

std::vector<double> parse_percentiles(const std::string& spec) {
  std::vector<double> out;
  std::string s = trim(spec);
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'')
      && s.back() == s.front())
    s = trim(s.substr(1, s.size() - 2));
  if (s.empty()) return out;
  for (const std::string& tok : split(s, ',')) {
    double v;
    if (!parse_double(tok, v) || !(v > 0 && v < 100))
      throw std::invalid_argument("invalid percentile '" + trim(tok)
                                  + "': percentiles must be numbers in (0, 100)");
    if (!out.empty() && !(v > out.back()))
      throw std::invalid_argument(
          "percentiles must be given in strictly increasing order: " + s);
    out.push_back(v);
  }
  return out;
}

options parse_args(int argc, char** argv) {
  options opt;
  bool files_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (files_only || arg.empty() || arg[0] != '-' || arg == "-") {
      opt.files.push_back(arg);
      continue;
    }
    if (arg == "--") {
      files_only = true;
      continue;
    }
    std::string name = arg, value;
    bool has_value = false;
    size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = trim(arg.substr(eq + 1));
      has_value = !value.empty();
    }
    auto take_value = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc)
        throw std::invalid_argument("option " + name + " requires a value");
      return trim(argv[++i]);
    };
    if (name == "--help" || name == "-h") {
      opt.help = true;
    } else if (name == "--percentiles" || name == "-p") {
      opt.percentiles = parse_percentiles(take_value());
    } else if (name == "--sig_figs" || name == "-s") {
      std::string v = take_value();
      double d;
      if (!parse_double(v, d) || d != std::floor(d) || d < 1 || d > 18)
        throw std::invalid_argument("invalid --sig_figs value '" + v
                                    + "': must be an integer in 1..18");
      opt.sig_figs = static_cast<int>(d);
    } else if (name == "--csv_filename" || name == "--csv_file" || name == "-c") {
      opt.csv_filename = take_value();
      if (opt.csv_filename.empty())
        throw std::invalid_argument("empty --csv_filename");
    } else {
      throw std::invalid_argument("unknown option " + arg);
    }
  }
  return opt;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  try {
    opt = parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "stansummary: " << e.what() << "\n";
    usage(std::cerr);
    return 1;
  }
  if (opt.help) {
    usage(std::cout);
    return 0;
  }
  if (opt.files.empty()) {
    std::cerr << "stansummary: no input CSV files given\n";
    usage(std::cerr);
    return 1;
  }

  std::vector<chain_file> chains;
  try {
    for (const std::string& path : opt.files) {
      chains.push_back(read_chain_file(path));
      const chain_file& c = chains.back();
      if (chains.size() > 1 && c.columns != chains[0].columns)
        throw std::runtime_error(
            path + ": CSV columns differ from those of " + chains[0].path);
    }
  } catch (const std::exception& e) {
    std::cerr << "stansummary: error reading input: " << e.what() << "\n";
    return 1;
  }

  size_t total_draws = 0;
  double total_sampling = 0, total_warmup = 0;
  for (const auto& c : chains) {
    total_draws += c.draws.size();
    total_sampling += c.sampling_seconds;
    total_warmup += c.warmup_seconds;
  }
  if (total_draws == 0) {
    std::cerr << "stansummary: the input files contain no post-warmup draws\n";
    return 1;
  }

  const std::vector<std::string>& raw_cols = chains[0].columns;
  size_t n_cols = raw_cols.size();
  std::vector<double> probs;
  for (double p : opt.percentiles) probs.push_back(p / 100.0);

  std::vector<std::string> names(n_cols);
  std::vector<column_summary> rows(n_cols);
  std::vector<std::vector<double>> col_chains(chains.size());
  for (size_t j = 0; j < n_cols; ++j) {
    names[j] = pretty_name(raw_cols[j]);
    for (size_t c = 0; c < chains.size(); ++c) {
      col_chains[c].resize(chains[c].draws.size());
      for (size_t r = 0; r < chains[c].draws.size(); ++r)
        col_chains[c][r] = chains[c].draws[r][j];
    }
    // Only chains that hold draws take part (e.g. num_samples=0 in one file).
    std::vector<std::vector<double>> used;
    for (const auto& cc : col_chains)
      if (!cc.empty()) used.push_back(cc);
    rows[j] = summarize(used, probs, total_sampling);
  }

  std::vector<std::string> header{"Mean", "MCSE", "StdDev"};
  for (double p : opt.percentiles) header.push_back(pct_label(p));
  header.insert(header.end(), {"N_Eff", "N_Eff/s", "R_hat"});
  auto row_values = [&](const column_summary& s) {
    std::vector<double> v{s.mean, s.mcse, s.sd};
    v.insert(v.end(), s.quantiles.begin(), s.quantiles.end());
    v.insert(v.end(), {s.ess, s.ess_per_sec, s.rhat});
    return v;
  };

  std::string model = config_str(chains[0], "model", "(unknown)");

  // ---- CSV file ----
  if (!opt.csv_filename.empty()) {
    int prec = opt.sig_figs > 0 ? opt.sig_figs : 6;
    std::ofstream out(opt.csv_filename);
    if (!out) {
      std::cerr << "stansummary: cannot write " << opt.csv_filename << "\n";
      return 1;
    }
    out << "name";
    for (const auto& h : header) out << "," << h;
    out << "\n";
    for (size_t j = 0; j < n_cols; ++j) {
      out << '"' << names[j] << '"';
      for (double v : row_values(rows[j])) out << "," << fmt(v, prec);
      out << "\n";
    }
    out << "# Inference for Stan model: " << model << "\n";
    out << "# " << chains.size() << " chain(s), " << total_draws
        << " post-warmup draws in total\n";
    out << "# Sampling took " << fmt(total_sampling, 6)
        << " seconds in total (sum over chains)\n";
    out.close();
    if (!out) {
      std::cerr << "stansummary: error writing " << opt.csv_filename << "\n";
      return 1;
    }
  }

  // ---- console ----
  int prec = opt.sig_figs > 0 ? opt.sig_figs : 2;
  std::ostream& o = std::cout;
  o << "Inference for Stan model: " << model << "\n";
  o << chains.size() << " chain" << (chains.size() == 1 ? "" : "s")
    << ": draws per chain = (";
  for (size_t c = 0; c < chains.size(); ++c)
    o << (c ? "," : "") << chains[c].draws.size();
  o << "); saved warmup per chain = (";
  for (size_t c = 0; c < chains.size(); ++c)
    o << (c ? "," : "") << chains[c].warmup.size();
  o << "); thin = " << config_long(chains[0], "thin", 1) << "; " << total_draws
    << " draws used.\n\n";
  o << "Warmup took (";
  for (size_t c = 0; c < chains.size(); ++c)
    o << (c ? ", " : "") << fmt(chains[c].warmup_seconds, 2);
  o << ") seconds, " << fmt(total_warmup, 3) << " seconds total\n";
  o << "Sampling took (";
  for (size_t c = 0; c < chains.size(); ++c)
    o << (c ? ", " : "") << fmt(chains[c].sampling_seconds, 2);
  o << ") seconds, " << fmt(total_sampling, 3) << " seconds total\n\n";

  std::vector<std::vector<std::string>> cells(n_cols);
  size_t name_w = 4;
  std::vector<size_t> widths(header.size());
  for (size_t k = 0; k < header.size(); ++k) widths[k] = header[k].size();
  for (size_t j = 0; j < n_cols; ++j) {
    name_w = std::max(name_w, names[j].size());
    for (double v : row_values(rows[j])) cells[j].push_back(fmt(v, prec));
    for (size_t k = 0; k < header.size(); ++k)
      widths[k] = std::max(widths[k], cells[j][k].size());
  }
  o << std::left << std::setw(name_w) << "" << std::right;
  for (size_t k = 0; k < header.size(); ++k)
    o << "  " << std::setw(widths[k]) << header[k];
  o << "\n\n";
  for (size_t j = 0; j < n_cols; ++j) {
    o << std::left << std::setw(name_w) << names[j] << std::right;
    for (size_t k = 0; k < header.size(); ++k)
      o << "  " << std::setw(widths[k]) << cells[j][k];
    o << "\n";
    // Blank line between sampler diagnostics and model quantities.
    bool sampler = names[j].size() > 2
                   && names[j].compare(names[j].size() - 2, 2, "__") == 0;
    bool next_sampler
        = j + 1 < n_cols && names[j + 1].size() > 2
          && names[j + 1].compare(names[j + 1].size() - 2, 2, "__") == 0;
    if (sampler && !next_sampler && j + 1 < n_cols) o << "\n";
  }
  o << "\n";
  if (chains[0].fixed_param) {
    o << "Draws were generated with the fixed_param sampler.\n";
  } else {
    o << "Draws were generated with " << config_str(chains[0], "algorithm", "?");
    std::string engine = config_str(chains[0], "engine");
    if (!engine.empty()) o << " (" << engine << ")";
    std::string metric = config_str(chains[0], "metric");
    if (!metric.empty()) o << ", metric " << metric;
    o << ".\n";
  }
  o << "MCSE = StdDev / sqrt(N_Eff); N_Eff is the split-chain effective sample\n"
       "size; R_hat is the split-chain potential scale reduction (1 at "
       "convergence).\n";
  return 0;
}
