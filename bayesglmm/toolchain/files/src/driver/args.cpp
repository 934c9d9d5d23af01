// Argument tree of the CmdStan 2.35 command line: definition, parsing, printing.
#include "driver.hpp"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace bglmm {

namespace {

std::string fmt_real(double d) {
  std::ostringstream os;
  os << d;
  return os.str();
}

bool parse_ll(const std::string& s, long long& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoll(s.c_str(), &end, 10);
  return errno == 0 && end && *end == '\0';
}

bool parse_real(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}

// Tree-building helpers.
Arg* add(Arg* parent, const std::string& name, Arg::Kind kind) {
  parent->kids.emplace_back(new Arg(name, kind));
  return parent->kids.back().get();
}
Arg* cat(Arg* p, const std::string& n) { return add(p, n, Arg::CAT); }
Arg* list(Arg* p, const std::string& n, const std::string& def) {
  Arg* a = add(p, n, Arg::LIST);
  a->value = a->def = def;
  return a;
}
Arg* option(Arg* list, const std::string& n) { return add(list, n, Arg::CAT); }
Arg* integer(Arg* p, const std::string& n, long long def, long long lo, long long hi) {
  Arg* a = add(p, n, Arg::INT);
  a->ilo = lo;
  a->ihi = hi;
  a->ranged = true;
  a->value = a->def = std::to_string(def);
  return a;
}
Arg* real(Arg* p, const std::string& n, double def, double lo = -HUGE_VAL,
          bool lo_open = false, double hi = HUGE_VAL) {
  Arg* a = add(p, n, Arg::REAL);
  a->rlo = lo;
  a->rhi = hi;
  a->rlo_open = lo_open;
  a->ranged = true;
  a->value = a->def = fmt_real(def);
  return a;
}
Arg* boolean(Arg* p, const std::string& n, bool def) {
  Arg* a = add(p, n, Arg::BOOL);
  a->value = a->def = def ? "true" : "false";
  return a;
}
Arg* str(Arg* p, const std::string& n, const std::string& def) {
  Arg* a = add(p, n, Arg::STR);
  a->value = a->def = def;
  return a;
}

const long long BIG = std::numeric_limits<int>::max();

void lbfgs_like(Arg* p, bool history) {
  real(p, "init_alpha", 0.001, 0, true);
  real(p, "tol_obj", 1e-12, 0);
  real(p, "tol_rel_obj", 1e4, 0);
  real(p, "tol_grad", 1e-8, 0);
  real(p, "tol_rel_grad", 1e7, 0);
  real(p, "tol_param", 1e-8, 0);
  if (history) integer(p, "history_size", 5, 1, BIG);
}

}  // namespace

Arg* Arg::child(const std::string& n) const {
  for (auto& k : kids)
    if (k->name == n) return k.get();
  return nullptr;
}

bool Arg::set(const std::string& text) {
  switch (kind) {
    case INT: {
      long long v;
      if (!parse_ll(text, v)) return false;
      if (ranged && (v < ilo || v > ihi)) return false;
      value = std::to_string(v);
      return true;
    }
    case REAL: {
      double v;
      if (!parse_real(text, v)) return false;
      if (std::isnan(v)) return false;
      if (ranged && (v < rlo || v > rhi || (rlo_open && v == rlo))) return false;
      value = fmt_real(v);
      return true;
    }
    case BOOL:
      if (text == "1" || text == "true") {
        value = "true";
        return true;
      }
      if (text == "0" || text == "false") {
        value = "false";
        return true;
      }
      return false;
    case STR:
      value = text;
      return true;
    case LIST:
      if (!child(text)) return false;
      value = text;
      return true;
    default:
      return false;
  }
}

std::unique_ptr<Arg> make_tree(const std::string& default_threads) {
  std::unique_ptr<Arg> root(new Arg("", Arg::CAT));
  Arg* r = root.get();
  Arg* method = list(r, "method", "sample");

  // sample
  Arg* s = option(method, "sample");
  integer(s, "num_samples", 1000, 0, BIG);
  integer(s, "num_warmup", 1000, 0, BIG);
  boolean(s, "save_warmup", false);
  integer(s, "thin", 1, 1, BIG);
  Arg* ad = cat(s, "adapt");
  boolean(ad, "engaged", true);
  real(ad, "gamma", 0.05, 0, true);
  real(ad, "delta", 0.8, 0, true, 1);
  real(ad, "kappa", 0.75, 0, true);
  real(ad, "t0", 10, 0, true);
  integer(ad, "init_buffer", 75, 0, BIG);
  integer(ad, "term_buffer", 50, 0, BIG);
  integer(ad, "window", 25, 0, BIG);
  boolean(ad, "save_metric", false);
  Arg* salg = list(s, "algorithm", "hmc");
  Arg* hmc = option(salg, "hmc");
  Arg* engine = list(hmc, "engine", "nuts");
  integer(option(engine, "nuts"), "max_depth", 10, 1, BIG);
  real(option(engine, "static"), "int_time", 2 * M_PI, 0, true);
  Arg* metric = list(hmc, "metric", "diag_e");
  option(metric, "unit_e");
  option(metric, "diag_e");
  option(metric, "dense_e");
  str(hmc, "metric_file", "");
  real(hmc, "stepsize", 1, 0, true);
  real(hmc, "stepsize_jitter", 0, 0, false, 1);
  option(salg, "fixed_param");
  integer(s, "num_chains", 1, 1, BIG);

  // optimize
  Arg* o = option(method, "optimize");
  Arg* oalg = list(o, "algorithm", "lbfgs");
  lbfgs_like(option(oalg, "bfgs"), false);
  lbfgs_like(option(oalg, "lbfgs"), true);
  option(oalg, "newton");
  boolean(o, "jacobian", false);
  integer(o, "iter", 2000, 1, BIG);
  boolean(o, "save_iterations", false);

  // variational
  Arg* v = option(method, "variational");
  Arg* valg = list(v, "algorithm", "meanfield");
  option(valg, "meanfield");
  option(valg, "fullrank");
  integer(v, "iter", 10000, 1, BIG);
  integer(v, "grad_samples", 1, 1, BIG);
  integer(v, "elbo_samples", 100, 1, BIG);
  real(v, "eta", 1, 0, true);
  Arg* vad = cat(v, "adapt");
  boolean(vad, "engaged", true);
  integer(vad, "iter", 50, 1, BIG);
  real(v, "tol_rel_obj", 0.01, 0, true);
  integer(v, "eval_elbo", 100, 1, BIG);
  integer(v, "output_samples", 1000, 0, BIG);

  // diagnose
  Arg* d = option(method, "diagnose");
  Arg* test = list(d, "test", "gradient");
  Arg* grad = option(test, "gradient");
  real(grad, "epsilon", 1e-6, 0, true);
  real(grad, "error", 1e-6, 0, true);

  // generate_quantities
  Arg* g = option(method, "generate_quantities");
  str(g, "fitted_params", "");
  integer(g, "num_chains", 1, 1, BIG);

  // pathfinder
  Arg* p = option(method, "pathfinder");
  lbfgs_like(p, true);
  integer(p, "num_psis_draws", 1000, 1, BIG);
  integer(p, "num_paths", 4, 1, BIG);
  boolean(p, "save_single_paths", false);
  boolean(p, "psis_resample", true);
  boolean(p, "calculate_lp", true);
  integer(p, "max_lbfgs_iters", 1000, 1, BIG);
  integer(p, "num_draws", 1000, 1, BIG);
  integer(p, "num_elbo_draws", 25, 1, BIG);

  // log_prob
  Arg* lp = option(method, "log_prob");
  str(lp, "unconstrained_params", "");
  str(lp, "constrained_params", "");
  boolean(lp, "jacobian", true);

  // laplace
  Arg* la = option(method, "laplace");
  str(la, "mode", "");
  boolean(la, "jacobian", true);
  integer(la, "draws", 1000, 1, BIG);
  boolean(la, "calculate_lp", true);

  integer(r, "id", 1, 0, BIG);
  str(cat(r, "data"), "file", "");
  str(r, "init", "2");
  integer(cat(r, "random"), "seed", -1, -1, 4294967295LL);
  Arg* out = cat(r, "output");
  str(out, "file", "output.csv");
  str(out, "diagnostic_file", "");
  integer(out, "refresh", 100, 0, BIG);
  integer(out, "sig_figs", -1, -1, 18);
  str(out, "profile_file", "profile.csv");
  boolean(out, "save_cmdstan_config", false);
  Arg* nt = integer(r, "num_threads", 1, -1, BIG);
  nt->set(default_threads);
  nt->def = nt->value;
  return root;
}

void parse_args(Arg& root, const std::vector<std::string>& tokens) {
  std::vector<Arg*> stack{&root};
  Arg* method = root.child("method");
  for (const std::string& tok : tokens) {
    size_t eq = tok.find('=');
    bool has_value = eq != std::string::npos;
    std::string name = has_value ? tok.substr(0, eq) : tok;
    std::string value = has_value ? tok.substr(eq + 1) : "";
    bool matched = false;
    for (int level = static_cast<int>(stack.size()) - 1; level >= 0; --level) {
      Arg* c = stack[level]->child(name);
      if (!c) continue;
      if (level == 0 && c->given)
        throw usage_error("Argument " + name + " is given more than once.");
      if (c->kind == Arg::CAT) {
        if (has_value) throw usage_error(tok + " is either mistyped or misplaced.");
        stack.resize(level + 1);
        stack.push_back(c);
      } else {
        if (!has_value)
          throw usage_error(tok + " is either mistyped or misplaced.");
        if (!c->set(value))
          throw usage_error(value + " is not a valid value for \"" + name + "\"");
        stack.resize(level + 1);
        if (c->kind == Arg::LIST) stack.push_back(c->selected());
      }
      c->given = true;
      matched = true;
      break;
    }
    if (!matched) {
      // A bare method name stands for method=<name>.
      if (!has_value && !method->given && method->child(name)) {
        method->set(name);
        method->given = true;
        stack.resize(1);
        stack.push_back(method->selected());
        continue;
      }
      throw usage_error(tok + " is either mistyped or misplaced.");
    }
  }
  if (!method->given)
    throw usage_error("A method must be specified!");
}

namespace {
void print_node(const Arg& a, int depth, std::ostream& os, const std::string& prefix) {
  std::string indent = prefix + std::string(2 * depth, ' ');
  if (a.kind == Arg::CAT) {
    os << indent << a.name << '\n';
    for (auto& k : a.kids) print_node(*k, depth + 1, os, prefix);
    return;
  }
  os << indent << a.name << " = " << a.value << (a.value == a.def ? " (Default)" : "")
     << '\n';
  if (a.kind == Arg::LIST) {
    // The metric choices are plain values in CmdStan's tree (no sub-category line).
    const Arg* sel = a.selected();
    if (sel && a.name != "metric") print_node(*sel, depth + 1, os, prefix);
  }
}
}  // namespace

void print_tree(const Arg& root, std::ostream& os, const std::string& prefix) {
  for (auto& k : root.kids) print_node(*k, 0, os, prefix);
}

Arg& at(Arg& root, const std::string& path) {
  Arg* node = &root;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t dot = path.find('.', pos);
    std::string seg = path.substr(pos, dot == std::string::npos ? std::string::npos
                                                                 : dot - pos);
    Arg* next = node->child(seg);
    if (!next) throw std::logic_error("internal: no argument " + path);
    node = next;
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return *node;
}

void print_help(std::ostream& os) {
  os << "Usage: <model> <arg1> <subarg1_1> ... <subarg1_m> ... <arg_n> "
        "<subarg_n_1> ... <subarg_n_m>\n"
        "\n"
        "Begin by selecting amongst the following inference methods and diagnostics,\n"
        "  sample               Bayesian inference with Markov Chain Monte Carlo\n"
        "  optimize             Point estimation\n"
        "  variational          Variational inference\n"
        "  diagnose             Model diagnostics\n"
        "  generate_quantities  Generate quantities of interest\n"
        "  pathfinder           Pathfinder variational inference\n"
        "  log_prob             Return the log density up to a constant and its gradients\n"
        "  laplace              Sample from a Laplace approximation\n"
        "\n"
        "Or see help information with\n"
        "  help                 Prints help\n"
        "  help-all             Prints entire argument tree\n"
        "\n"
        "Additional configuration available by specifying\n"
        "  id                   Unique process identifier\n"
        "  data                 Input data file\n"
        "  init                 Initialization method: real x > 0 initializes randomly\n"
        "                       in (-x, x), 0 initializes to 0, or a file name\n"
        "  random               Random number configuration\n"
        "  output               File output options\n"
        "  num_threads          Number of threads available to the program\n"
        "\n"
        "See <model> <arg1> [ help | help-all ] for details on individual arguments.\n"
        "\n";
}

}  // namespace bglmm
