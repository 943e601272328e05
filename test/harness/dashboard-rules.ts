import { stringify } from 'yaml';

/** The parts of a Grafana dashboard JSON this module reads (https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/). */
export interface GrafanaDashboard {
  panels: { id: number; title: string; targets?: { refId: string; expr: string }[]; panels?: GrafanaDashboard['panels'] }[];
}

/**
 * Grafana's variables as a rule needs them: `$model` (a multi-value "All" becomes the regex `.+`),
 * `$__rate_interval` and `$__interval` (a range Prometheus accepts).
 */
const VARIABLES: [RegExp, string][] = [
  [/\$__rate_interval|\$\{__rate_interval\}/g, '1m'],
  [/\$__interval|\$\{__interval\}/g, '1m'],
  [/\$\{model(?::\w+)?\}|\$model/g, '.+'],
];

/** Every PromQL query of a dashboard's panels (rows' nested panels too), with its panel and refId. */
export function dashboardQueries(dashboard: GrafanaDashboard): { panel: string; refId: string; expr: string }[] {
  const queries: { panel: string; refId: string; expr: string }[] = [];
  const visit = (panels: GrafanaDashboard['panels']): void => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) queries.push({ panel: panel.title, refId: target.refId, expr: target.expr });
      visit(panel.panels ?? []);
    }
  };
  visit(dashboard.panels);
  return queries;
}

/**
 * A Prometheus rules file (YAML, https://prometheus.io/docs/prometheus/latest/configuration/recording_rules/)
 * with one recording rule per dashboard query, its Grafana variables substituted, so that
 * `promtool check rules` parses and type-checks every query of the dashboard.
 */
export function dashboardRulesFile(dashboard: GrafanaDashboard): string {
  const rules = dashboardQueries(dashboard).map((query, i) => ({
    record: `inferline_dashboard:query_${i + 1}`,
    expr: VARIABLES.reduce((expr, [pattern, value]) => expr.replace(pattern, value), query.expr),
    labels: { panel: query.panel, ref_id: query.refId },
  }));
  return stringify({ groups: [{ name: 'inferline-dashboard', rules }] });
}
