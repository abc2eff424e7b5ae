// Command surface counts a Go package's exported surface the way the
// project's design issues count it: package-level exported names (types,
// functions, constants, variables) plus exported methods declared on
// exported types. Struct fields and interface methods are not counted,
// nor are test files.
//
//	go run ./internal/surface ./ginoauth ./ginoauth/indigoclient
//
// It prints one line per package (the total and its parts) and, with -v,
// every name it counted.
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"sort"
	"strings"
)

// count is one package's exported surface.
type count struct {
	types, funcs, consts, vars, methods int
	names                               []string
}

func (c count) total() int { return c.types + c.funcs + c.consts + c.vars + c.methods }

func main() {
	verbose := flag.Bool("v", false, "list every counted name")
	flag.Parse()
	dirs := flag.Args()
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	fmt.Printf("%-36s %5s  %s\n", "package", "total", "types/funcs/consts/vars/methods")
	for _, dir := range dirs {
		c, err := countDir(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%-36s %5d  %d/%d/%d/%d/%d\n", dir, c.total(), c.types, c.funcs, c.consts, c.vars, c.methods)
		if *verbose {
			sort.Strings(c.names)
			for _, n := range c.names {
				fmt.Println("    " + n)
			}
		}
	}
}

// countDir counts the exported surface of the package in dir.
func countDir(dir string) (count, error) {
	var c count
	fset := token.NewFileSet()
	skipTests := func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }
	pkgs, err := parser.ParseDir(fset, dir, skipTests, 0) //nolint:staticcheck // no module loading needed: declarations only
	if err != nil {
		return c, err
	}
	for name, pkg := range pkgs {
		if strings.HasSuffix(name, "_test") {
			continue
		}
		for _, f := range pkg.Files {
			for _, decl := range f.Decls {
				c.add(decl)
			}
		}
	}
	return c, nil
}

func (c *count) add(decl ast.Decl) {
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() {
			return
		}
		if d.Recv == nil {
			c.funcs++
			c.names = append(c.names, "func "+d.Name.Name)
			return
		}
		if recv := receiverName(d.Recv.List[0].Type); ast.IsExported(recv) {
			c.methods++
			c.names = append(c.names, "method "+recv+"."+d.Name.Name)
		}
	case *ast.GenDecl:
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				if s.Name.IsExported() {
					c.types++
					c.names = append(c.names, "type "+s.Name.Name)
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					if !n.IsExported() {
						continue
					}
					if d.Tok == token.CONST {
						c.consts++
						c.names = append(c.names, "const "+n.Name)
					} else {
						c.vars++
						c.names = append(c.names, "var "+n.Name)
					}
				}
			}
		}
	}
}

// receiverName is the type name of a method receiver (T, *T, T[P]).
func receiverName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return receiverName(t.X)
	case *ast.IndexExpr:
		return receiverName(t.X)
	case *ast.IndexListExpr:
		return receiverName(t.X)
	case *ast.Ident:
		return t.Name
	}
	return ""
}
