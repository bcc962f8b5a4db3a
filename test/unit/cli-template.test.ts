/**
 * `--format` templates (Go text/template subset): fields, nesting, case-insensitive keys,
 * functions, pipes, if/range, `table` headers and alignment, `\t`/`\n` escapes, and every
 * refusal with its sentence.
 */
import { describe, expect, it } from 'vitest';
import { alignColumns, headerName, Template } from '../../mesh/cli/template.js';
import { isShoalError } from '../../src/errors.js';

const service = {
  id: 'abc123', version: 3, createdAt: '2024-05-01T10:00:00Z',
  spec: { name: 'web', replicas: 2, command: ['sleep', '600'], env: {}, labels: { tier: 'front', team: 'a' }, ports: [{ target: 80, published: 8080 }, { target: 53, published: 5353 }] },
  vips: { net1: { v4: '10.0.0.2' } },
};
const row = { ID: 'abc123', Name: 'web', Replicas: '2/2', Healthy: false, Empty: '', Ports: ['a', 'b'], Labels: { tier: 'front' } };

describe('Template.render', () => {
  it.each<[string, object, string]>([
    ['{{.Name}}', row, 'web'],
    ['{{.ID}}: {{.Name}}', row, 'abc123: web'],
    ['{{ .Name }}', row, 'web'],
    ['{{.ID}}', service, 'abc123'],
    ['{{.Spec.Name}}', service, 'web'],
    ['{{.spec.name}}', service, 'web'],
    ['{{.Spec.Replicas}}', service, '2'],
    ['{{.CreatedAt}}', service, '2024-05-01T10:00:00Z'],
    ['{{json .Spec.Labels}}', service, '{"tier":"front","team":"a"}'],
    ['{{json .Spec.Command}}', service, '["sleep","600"]'],
    ['{{.Spec.Command}}', service, '["sleep","600"]'],
    ['{{json .Name}}', row, '"web"'],
    ['{{upper .Name}}', row, 'WEB'],
    ['{{.Name | upper}}', row, 'WEB'],
    ['{{.Name | upper | lower}}', row, 'web'],
    ['{{title "hello world"}}', row, 'Hello World'],
    ['{{index .Spec.Labels "tier"}}', service, 'front'],
    ['{{index .Spec.Labels "nope"}}', service, ''],
    ['{{join .Spec.Command " "}}', service, 'sleep 600'],
    ['{{join .Ports ","}}', row, 'a,b'],
    ['{{len .Spec.Ports}}', service, '2'],
    ['{{len .Labels}}', row, '1'],
    ['{{truncate .ID 3}}', row, 'abc'],
    ['{{range .Spec.Ports}}{{.Published}}->{{.Target}} {{end}}', service, '8080->80 5353->53 '],
    ['{{range .Vips}}{{.V4}}{{end}}', service, '10.0.0.2'],
    ['{{range .Nothing}}x{{else}}none{{end}}', { Nothing: [] }, 'none'],
    ['{{if .Healthy}}ok{{else}}sick{{end}}', row, 'sick'],
    ['{{if .Name}}named{{end}}', row, 'named'],
    ['{{if .Empty}}x{{else}}{{if .Name}}nested{{end}}{{end}}', row, 'nested'],
    ['{{.Spec.Missing}}', service, ''],
    ['{{.Spec.Name.Deeper}}', service, ''],
    ['a\\tb\\nc', row, 'a\tb\nc'],
    ['{{"lit"}} {{7}}', row, 'lit 7'],
    ['{{.Name -}}   x', row, 'webx'],
    ['y   {{- .Name}}', row, 'yweb'],
    ['no actions', row, 'no actions'],
    ['{{json .}}', { A: 1 }, '{"A":1}'],
  ])('%s', (format, obj, want) => {
    expect(new Template(format).render(obj)).toBe(want);
  });
});

describe('table templates', () => {
  it('derives the header from the fields and aligns the columns', () => {
    const t = new Template('table {{.ID}}\\t{{.Name}}\\t{{.CurrentState}}');
    expect(t.isTable).toBe(true);
    expect(t.header()).toBe('ID\tNAME\tCURRENT STATE');
    const lines = [t.header(), t.render({ ID: 'a1', Name: 'web', CurrentState: 'Running' }), t.render({ ID: 'b22222', Name: 'x', CurrentState: 'Failed' })];
    expect(alignColumns(lines)).toBe('ID       NAME   CURRENT STATE\na1       web    Running\nb22222   x      Failed\n');
  });

  it('names function columns by their field', () => {
    expect(new Template('table {{upper .Name}}\\t{{json .Spec.Labels}}').header()).toBe('NAME\tLABELS');
  });

  it.each([['ID', 'ID'], ['Name', 'NAME'], ['DesiredState', 'DESIRED STATE'], ['IPv6', 'IPV6'], ['createdAt', 'CREATED AT']])('headerName(%s) = %s', (f, h) => {
    expect(headerName(f)).toBe(h);
  });
});

describe('checkFields', () => {
  it('accepts known fields in any case, inside if and as function arguments', () => {
    expect(() => new Template('{{.id}} {{if .Name}}{{upper .Replicas}}{{end}}').checkFields(['ID', 'Name', 'Replicas'])).not.toThrow();
  });

  it('does not check fields inside range (their dot is an element)', () => {
    expect(() => new Template('{{range .Ports}}{{.Anything}}{{end}}').checkFields(['Ports'])).not.toThrow();
  });

  it('refuses an unknown top-level field, listing the known ones', () => {
    expect(errorOf(() => new Template('{{.Nmae}}').checkFields(['ID', 'Name']))).toBe("--format '{{.Nmae}}': there is no field 'Nmae' (fields: ID, Name)");
  });
});

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(isShoalError(e) && e.kind).toBe('InvalidParameter');
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

describe('refusals', () => {
  it.each<[string, RegExp]>([
    ['{{.Name', /an action '\{\{' is not closed with '\}\}'/],
    ['{{}}', /an empty action/],
    ['{{nope .Name}}', /unknown function 'nope' \(functions: json, upper, lower, title, len, join, index, truncate\)/],
    ['{{printf "%s" .Name}}', /'printf' is not supported/],
    ['{{with .Spec}}{{.Name}}{{end}}', /'with' is not supported/],
    ['{{$x := .Name}}', /is not supported/],
    ['{{if .Name}}x', /is not closed with \{\{end\}\}/],
    ['{{end}}', /unexpected \{\{end\}\}/],
    ['{{else}}', /unexpected \{\{else\}\}/],
    ['{{.Name .ID}}', /is not a field or a function call/],
    ['{{upper .Name .ID}}', /upper takes 1 argument, got 2/],
    ['{{Name}}', /unknown function 'Name'/],
    ['{{.Na-me}}', /'.Na-me' is not a field/],
  ])('%s', (format, message) => {
    expect(errorOf(() => new Template(format).render(row))).toMatch(message);
  });
});
