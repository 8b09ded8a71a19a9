{
  description = "Strata: a development shell with Node 24, pnpm, PostgreSQL and Redis";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in {
      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.nodejs_24
            pkgs.pnpm
            pkgs.postgresql_15
            pkgs.redis
            pkgs.wrk
          ];
          shellHook = ''
            echo "Strata dev shell: node $(node --version), pnpm $(pnpm --version)"
            echo "Start services: pg_ctl -D .pgdata init && pg_ctl -D .pgdata start; redis-server --daemonize yes"
          '';
        };
      });
    };
}
