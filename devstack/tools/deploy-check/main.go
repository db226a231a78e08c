// Command deploy-check validates the files of DeviceFleet's Docker path with the upstream
// projects' own code, pinned in go.mod (built by devstack/tools/install.sh):
//
//	deploy-check kind-config [--name NAME] FILE
//	    kind's loader (apiVersion/kind, strict YAML into sigs.k8s.io/kind/pkg/apis/config/v1alpha4),
//	    its defaults, and its validation (see checkKindValidation). Prints the defaulted config.
//	deploy-check dockerfile [--context DIR] FILE...
//	    BuildKit's Dockerfile parser and the lint rules behind `docker build --check`
//	    (dockerfile2llb.DockerfileLint), plus CopyIgnoredFile against DIR/.dockerignore and
//	    missing COPY sources. Prints every file's stages and instructions as parsed by BuildKit.
//	deploy-check kind-default-image
//	    The node image the compiled-in kind release defaults to (defaults.Image).
//	deploy-check versions
//	    The module versions compiled in.
//
// Results are JSON on stdout; findings go to stderr and make the exit status 1 (2: bad usage).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
)

// When this binary runs as "docker" (a symlink in a private PATH, see checkKindValidation)
// it is a stub container runtime that lets kind get as far as provisioning, and no further.
const (
	stubDockerName   = "docker"
	stubDockerLogEnv = "DEPLOY_CHECK_STUB_DOCKER_LOG"
	stubDockerRefuse = 97
)

func main() {
	if filepath.Base(os.Args[0]) == stubDockerName {
		os.Exit(stubDocker(os.Args[1:]))
	}
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "kind-config":
		err = kindConfig(os.Args[2:])
	case "dockerfile":
		err = dockerfiles(os.Args[2:])
	case "kind-default-image":
		fmt.Println(defaults.Image)
	case "versions":
		err = versions()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploy-check: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: deploy-check kind-config [--name NAME] FILE | "+
		"dockerfile [--context DIR] FILE... | kind-default-image | versions")
	os.Exit(2)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func versions() error {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return errors.New("no build info")
	}
	out := map[string]string{"go": info.GoVersion}
	for _, m := range info.Deps {
		out[m.Path] = m.Version
	}
	return printJSON(out)
}

// ---------------------------------------------------------------------------------------------
// kind
// ---------------------------------------------------------------------------------------------

func kindConfig(args []string) error {
	fs := flag.NewFlagSet("kind-config", flag.ContinueOnError)
	name := fs.String("name", "devicefleet", "cluster name, as in `kind create cluster --name`")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		usage()
	}
	path := fs.Arg(0)
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// The same decoding as kind's internal encoding.Parse: apiVersion/kind first, then the
	// v1alpha4 types with unknown fields rejected. A second YAML document would be ignored
	// by kind; here it is an error, so nothing in the file goes unread.
	var meta struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
	}
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if meta.APIVersion != "kind.x-k8s.io/v1alpha4" || meta.Kind != "Cluster" {
		return fmt.Errorf("%s: want apiVersion kind.x-k8s.io/v1alpha4, kind Cluster; got %q, %q",
			path, meta.APIVersion, meta.Kind)
	}
	cfg := &v1alpha4.Cluster{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: more than one YAML document (kind reads only the first)", path)
	}
	v1alpha4.SetDefaultsCluster(cfg)

	stoppedAt, err := checkKindValidation(path, *name)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return printJSON(map[string]any{
		"kindDefaultImage":  defaults.Image,
		"validated":         true,
		"stubDockerRefused": "docker " + stoppedAt,
		"config":            cfg,
	})
}

// checkKindValidation runs kind's own config path: cluster.Provider.Create loads the file
// (internal encoding.Load), applies defaults and calls the internal (*config.Cluster).Validate,
// none of which is importable from outside the kind module. Create needs a container runtime
// first (`docker info`, `docker ps`), so it runs with PATH holding only a stub "docker" (this
// binary): info and ps answer like an empty Docker host, every other command is refused. kind
// validates before it provisions, so reaching the first refused command means the config
// passed; an error before that is kind's verdict. Retain is on and KUBECONFIG and HOME point
// into a temporary directory, so nothing outside it is touched.
func checkKindValidation(path, name string) (stoppedAt string, err error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "deploy-check-kind-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := os.Symlink(self, filepath.Join(dir, stubDockerName)); err != nil {
		return "", err
	}
	callLog := filepath.Join(dir, "docker-calls.log")
	for k, v := range map[string]string{
		"PATH": dir, "HOME": dir, "KUBECONFIG": filepath.Join(dir, "kubeconfig"),
		stubDockerLogEnv: callLog,
	} {
		if err := os.Setenv(k, v); err != nil {
			return "", err
		}
	}
	provider := cluster.NewProvider(cluster.ProviderWithDocker())
	createErr := provider.Create(name,
		cluster.CreateWithConfigFile(abs),
		cluster.CreateWithRetain(true),
		cluster.CreateWithKubeconfigPath(filepath.Join(dir, "kubeconfig")),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	calls, err := readLines(callLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	for _, c := range calls {
		verb, _, _ := strings.Cut(c, " ")
		if verb != "info" && verb != "ps" && verb != "inspect" {
			return c, nil // kind validated the config and went on to provision
		}
	}
	if createErr == nil {
		return "", errors.New("kind created a cluster without provisioning anything (stub docker not used?)")
	}
	return "", fmt.Errorf("kind rejected the config: %w", createErr)
}

func stubDocker(args []string) int {
	if p := os.Getenv(stubDockerLogEnv); p != "" {
		if f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			fmt.Fprintln(f, strings.Join(args, " "))
			f.Close()
		}
	}
	if len(args) > 0 {
		switch args[0] {
		case "info": // a rootful cgroup v2 host
			fmt.Println(`{"CgroupDriver":"systemd","CgroupVersion":"2","MemoryLimit":true,` +
				`"PidsLimit":true,"CPUShares":true,"SecurityOptions":["name=seccomp,profile=builtin"]}`)
			return 0
		case "ps": // no containers, so no cluster of that name exists yet
			return 0
		case "inspect": // "the node image is present": kind would retry a pull for 10 s
			return 0
		}
	}
	fmt.Fprintln(os.Stderr, "deploy-check stub docker: refusing to provision")
	return stubDockerRefuse
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		out = append(out, s.Text())
	}
	return out, s.Err()
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles
// ---------------------------------------------------------------------------------------------

type finding struct {
	Rule   string `json:"rule"`
	Line   int    `json:"line"`
	Detail string `json:"detail"`
	URL    string `json:"url,omitempty"`
}

type mountOut struct {
	Type   string `json:"type"`
	Target string `json:"target"`
	Source string `json:"source,omitempty"`
	From   string `json:"from,omitempty"`
}

type instructionOut struct {
	Instruction string            `json:"instruction"`
	Line        int               `json:"line"`
	Source      string            `json:"source"`
	Args        []string          `json:"args,omitempty"`     // RUN/CMD/ENTRYPOINT command, COPY sources, EXPOSE ports
	ExecForm    bool              `json:"execForm,omitempty"` // RUN/CMD/ENTRYPOINT in JSON form
	Dest        string            `json:"dest,omitempty"`     // COPY/ADD
	From        string            `json:"from,omitempty"`     // COPY --from
	User        string            `json:"user,omitempty"`     // USER
	Values      map[string]string `json:"values,omitempty"`   // ENV, LABEL, ARG
	Mounts      []mountOut        `json:"mounts,omitempty"`   // RUN --mount
}

type stageOut struct {
	Name         string           `json:"name"`
	Base         string           `json:"base"`
	Platform     string           `json:"platform,omitempty"`
	Line         int              `json:"line"`
	Instructions []instructionOut `json:"instructions"`
}

type dockerfileOut struct {
	File     string     `json:"file"`
	Stages   []stageOut `json:"stages"`
	Findings []finding  `json:"findings"`
}

func dockerfiles(args []string) error {
	fs := flag.NewFlagSet("dockerfile", flag.ContinueOnError)
	contextDir := fs.String("context", ".", "build context (its .dockerignore is applied)")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		usage()
	}
	ignore, err := loadDockerignore(*contextDir)
	if err != nil {
		return err
	}
	var results []dockerfileOut
	bad := 0
	for _, file := range fs.Args() {
		res, err := checkDockerfile(file, *contextDir, ignore)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		for _, f := range res.Findings {
			fmt.Fprintf(os.Stderr, "%s:%d: %s: %s", file, f.Line, f.Rule, f.Detail)
			if f.URL != "" {
				fmt.Fprintf(os.Stderr, " (%s)", f.URL)
			}
			fmt.Fprintln(os.Stderr)
		}
		bad += len(res.Findings)
		results = append(results, res)
	}
	if err := printJSON(results); err != nil {
		return err
	}
	if bad > 0 {
		return fmt.Errorf("%d finding(s)", bad)
	}
	return nil
}

func loadDockerignore(contextDir string) (*patternmatcher.PatternMatcher, error) {
	f, err := os.Open(filepath.Join(contextDir, ".dockerignore"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return patternmatcher.New(patterns)
}

// stubResolver answers BuildKit's base-image lookups offline with a minimal linux image for
// the requested platform (a PATH, one layer), so no registry is contacted. The only rules that
// read the real base image are InvalidBaseImagePlatform and UndefinedVar for variables the
// base image defines; the Dockerfiles here use neither.
type stubResolver struct{}

func (stubResolver) ResolveImageConfig(
	_ context.Context, ref string, opt sourceresolver.Opt,
) (string, digest.Digest, []byte, error) {
	goos, arch := "linux", "amd64"
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		goos, arch = opt.ImageOpt.Platform.OS, opt.ImageOpt.Platform.Architecture
	}
	cfg, err := json.Marshal(map[string]any{
		"os":           goos,
		"architecture": arch,
		"config":       map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digest.FromString(ref).String()}},
	})
	return ref, "", cfg, err
}

func checkDockerfile(
	file, contextDir string, ignore *patternmatcher.PatternMatcher,
) (dockerfileOut, error) {
	out := dockerfileOut{File: file, Findings: []finding{}}
	dt, err := os.ReadFile(file)
	if err != nil {
		return out, err
	}
	// 1. What `docker build --check` reports: parse errors, build errors and every lint rule
	//    enabled by default (plus whatever a `# check=` directive in the file enables).
	//    The source map is built as dockerui builds it (the Dockerfile from a local source).
	ctx := context.Background()
	src := llb.Local("dockerfile")
	def, err := src.Marshal(ctx)
	if err != nil {
		return out, err
	}
	smap := llb.NewSourceMap(&src, file, "Dockerfile", dt)
	smap.Definition = def
	lint, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{
		SourceMap:    smap,
		MetaResolver: stubResolver{},
	})
	if err != nil {
		return out, err
	}
	if lint.Error != nil {
		line := 0
		if len(lint.Error.Location.Ranges) > 0 {
			line = int(lint.Error.Location.Ranges[0].Start.Line)
		}
		out.Findings = append(out.Findings, finding{Rule: "BuildError", Line: line, Detail: lint.Error.Message})
	}
	for _, w := range lint.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		out.Findings = append(out.Findings, finding{Rule: w.RuleName, Line: line, Detail: w.Detail, URL: w.URL})
	}

	// 2. The stages as BuildKit parses them, for the structural assertions in the tests.
	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return out, err
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return out, err
	}
	for _, st := range stages {
		so := stageOut{
			Name: st.Name, Base: st.BaseName, Platform: st.Platform, Line: firstLine(st.Location),
			Instructions: []instructionOut{},
		}
		for _, cmd := range st.Commands {
			ins, extra := describe(cmd, contextDir, ignore)
			so.Instructions = append(so.Instructions, ins)
			out.Findings = append(out.Findings, extra...)
		}
		out.Stages = append(out.Stages, so)
	}
	return out, nil
}

func firstLine(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

func kvs(pairs instructions.KeyValuePairs) map[string]string {
	m := map[string]string{}
	for _, p := range pairs {
		m[p.Key] = p.Value
	}
	return m
}

// describe turns one parsed instruction into JSON and checks COPY sources against the build
// context: CopyIgnoredFile as BuildKit applies it when a .dockerignore is present (it needs a
// BuildKit client to read that file, so it is re-applied here with the same matcher and
// message), and sources that match nothing in the context (a build error).
func describe(
	cmd instructions.Command, contextDir string, ignore *patternmatcher.PatternMatcher,
) (instructionOut, []finding) {
	line := firstLine(cmd.Location())
	ins := instructionOut{Instruction: strings.ToUpper(cmd.Name()), Line: line}
	if s, ok := cmd.(fmt.Stringer); ok {
		ins.Source = s.String()
	}
	var found []finding
	switch c := cmd.(type) {
	case *instructions.RunCommand:
		ins.Args, ins.ExecForm = c.CmdLine, !c.PrependShell
		if err := c.Expand(func(w string) (string, error) { return w, nil }); err == nil {
			for _, m := range instructions.GetMounts(c) {
				ins.Mounts = append(ins.Mounts, mountOut{
					Type: string(m.Type), Target: m.Target, Source: m.Source, From: m.From,
				})
			}
		}
	case *instructions.CmdCommand:
		ins.Args, ins.ExecForm = c.CmdLine, !c.PrependShell
	case *instructions.EntrypointCommand:
		ins.Args, ins.ExecForm = c.CmdLine, !c.PrependShell
	case *instructions.UserCommand:
		ins.User = c.User
	case *instructions.ExposeCommand:
		ins.Args = c.Ports
	case *instructions.EnvCommand:
		ins.Values = kvs(c.Env)
	case *instructions.LabelCommand:
		ins.Values = kvs(c.Labels)
	case *instructions.ArgCommand:
		ins.Values = map[string]string{}
		for _, a := range c.Args {
			ins.Values[a.Key] = a.ValueString()
		}
	case *instructions.AddCommand:
		ins.Args, ins.Dest = c.SourcePaths, c.DestPath
	case *instructions.CopyCommand:
		ins.Args, ins.Dest, ins.From = c.SourcePaths, c.DestPath, c.From
		if c.From == "" {
			found = append(found, checkCopySources(c.SourcePaths, line, contextDir, ignore)...)
		}
	}
	return ins, found
}

func checkCopySources(
	sources []string, line int, contextDir string, ignore *patternmatcher.PatternMatcher,
) []finding {
	var found []finding
	for _, src := range sources {
		clean := filepath.ToSlash(filepath.Clean(src))
		// Same conditions as dockerfile2llb.validateCopySourcePath.
		if ignore != nil && !ignore.Exclusions() && clean != "." && clean != "/" {
			if ok, err := ignore.MatchesOrParentMatches(clean); err == nil && ok {
				found = append(found, finding{
					Rule: linter.RuleCopyIgnoredFile.Name, Line: line,
					Detail: linter.RuleCopyIgnoredFile.Format("Copy", clean),
					URL:    linter.RuleCopyIgnoredFile.URL,
				})
			}
		}
		matches, err := filepath.Glob(filepath.Join(contextDir, strings.TrimPrefix(clean, "/")))
		if err != nil || len(matches) == 0 {
			found = append(found, finding{
				Rule: "CopySourceMissing", Line: line,
				Detail: fmt.Sprintf("COPY source %q matches nothing in the build context %s", src, contextDir),
			})
		}
	}
	return found
}
